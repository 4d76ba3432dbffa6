#!/usr/bin/env python3
"""What a strong engineer writes in an afternoon to learn which member accounts can be
reached: assume the managing role with the ExternalId, list the organization, then assume
each member role from a thread pool, CONCURRENCY at once.

    peer.py MANAGING_ROLE_ARN EXTERNAL_ID MEMBER_ROLE_NAME CONCURRENCY

Prints "<account> connected|blocked" per account, and the listing and probing times in
milliseconds on stderr, in the same form as baseline.sh (the benchmark reads them).
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    role, external_id, member_role, concurrency = sys.argv[1:5]
    concurrency = int(concurrency)
    # Throttling is retried with backoff, as a careful script does.
    config = Config(
        max_pool_connections=concurrency,
        retries={"mode": "standard", "max_attempts": 10},
    )
    started = time.monotonic()
    credentials = boto3.client("sts", config=config).assume_role(
        RoleArn=role, RoleSessionName="peer", ExternalId=external_id
    )["Credentials"]
    managing = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    organizations = managing.client("organizations", config=config)
    accounts = [
        account["Id"]
        for page in organizations.get_paginator("list_accounts").paginate()
        for account in page["Accounts"]
        # AWS reports an account's State; Status is retired.
        if account.get("State") == "ACTIVE"
    ]
    listed = time.monotonic()

    partition = role.split(":")[1]
    sts = managing.client("sts", config=config)

    def probe(account):
        try:
            sts.assume_role(
                RoleArn=f"arn:{partition}:iam::{account}:role/{member_role}",
                RoleSessionName="peer",
            )
            return account, "connected"
        except ClientError:
            return account, "blocked"

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(probe, accounts))
    probed = time.monotonic()
    for account, outcome in results:
        print(account, outcome)
    ms = lambda seconds: int(seconds * 1000)
    print(f"listed {len(accounts)} accounts in {ms(listed - started)} ms", file=sys.stderr)
    print(f"probed {len(results)} accounts in {ms(probed - listed)} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
