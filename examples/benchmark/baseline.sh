#!/usr/bin/env bash
# What a platform engineer would otherwise script to learn which member accounts can be
# reached: assume the managing role with the ExternalId, list every account, then try the
# member role in each, one aws-cli call per account.
#
#   baseline.sh MANAGING_ROLE_ARN EXTERNAL_ID MEMBER_ROLE_NAME [MAX_ACCOUNTS]
#
# Prints "<account> connected|blocked" per account, and the listing and probing times in
# milliseconds on stderr (the benchmark reads them). MAX_ACCOUNTS limits the probing to
# the first accounts listed, to sample a large organization.
set -euo pipefail
role="$1" external_id="$2" member_role="$3" max="${4:-0}"
aws="${AWS_CLI:-aws}"

now_ms() { date +%s%3N; }

started=$(now_ms)
read -r key secret token < <("$aws" sts assume-role --role-arn "$role" \
  --role-session-name baseline --external-id "$external_id" \
  --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)
export AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_SESSION_TOKEN="$token"
accounts=$("$aws" organizations list-accounts --page-size 20 --query 'Accounts[].Id' \
  --output text | tr '\t' '\n')
listed=$(now_ms)

partition=$(cut -d: -f2 <<<"$role")
count=0
while read -r account; do
  [[ -n "$account" ]] || continue
  if ((max > 0 && count >= max)); then break; fi
  count=$((count + 1))
  if "$aws" sts assume-role --role-arn "arn:$partition:iam::$account:role/$member_role" \
    --role-session-name baseline >/dev/null 2>&1; then
    echo "$account connected"
  else
    echo "$account blocked"
  fi
done <<<"$accounts"
probed=$(now_ms)

echo "listed $(wc -l <<<"$accounts") accounts in $((listed - started)) ms" >&2
echo "probed $count accounts in $((probed - listed)) ms" >&2
