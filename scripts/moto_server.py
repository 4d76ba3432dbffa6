"""moto's server for the test bed, with its per-account lookups made constant-time.

AWS answers a call in the same time whether an organization has 40 accounts or 20,000.
moto's organizations backend finds an account by walking its list of every account
(DescribeAccount, MoveAccount, each CreateAccount's policy attachments, tags), and its
backend registry copies the list of every known account on each request, so an emulator
holding 20,000 accounts spends most of each call walking lists: seeding grows with the
square of the organization and every probe slows as the organization grows. Scale
measurements would then measure moto. This launcher keeps moto's behaviour and errors,
and only finds what exists through an index: each patched method takes the fast path when
the account is found, and leaves everything else (every error included) to moto itself.
It also finds a request's account from its access key once (patch_access_key_lookup),
and drops two costs moto pays again on every request (patch_request_overhead).

Run as moto_server is: `python moto_server.py -H 127.0.0.1 -p PORT`.
"""

import logging
import os
import re
import sys

from moto import backends
from moto.core import base_backend
from moto.organizations import utils
from moto.organizations.models import OrganizationsBackend
from moto.server import main

ACCOUNT_ID = re.compile(utils.ACCOUNT_ID_REGEX)


def patch_backend_registry():
    """An account's backend is looked up in the registry's own dict.

    moto copies every key into a list to ask whether an account has a backend yet, and
    compares the registered backend dicts by value; a dict lookup and an identity test
    answer the same questions.
    """
    backend_dict = base_backend.BackendDict

    def create_once(self, account_id):
        with base_backend.backend_lock:
            if account_id not in self:
                self[account_id] = base_backend.AccountSpecificBackend(
                    service_name=self.service_name,
                    account_id=account_id,
                    backend=self.backend,
                    use_boto3_regions=self._use_boto3_regions,
                    additional_regions=self._additional_regions,
                )
            if not any(d is self for d in backend_dict._instances):
                backend_dict._instances.append(self)

    backend_dict._create_account_specific_backend = create_once


def patch_access_key_lookup():
    """The account of a request's access key, remembered once found.

    Without an `x-moto-account-id` header moto finds the account by asking every account's
    IAM, in every partition (creating each partition's IAM on the way), whether it holds the
    key. A key found is remembered and checked again where it was found; a key not found
    is looked for as moto does, through the IAMs that exist.
    """
    from moto.iam import models as iam

    found = {}

    def holds(account, access_key):
        return any(access_key in backend.access_keys for backend in list(account.values()))

    def account_id_from(access_key):
        account_id = found.get(access_key)
        if account_id is not None:
            account = dict.get(iam.iam_backends, account_id)
            if account is not None and holds(account, access_key):
                return account_id
        for account_id, account in list(iam.iam_backends.items()):
            if holds(account, access_key):
                found[access_key] = account_id
                return account_id
        return iam.DEFAULT_ACCOUNT_ID

    iam.get_account_id_from = account_id_from


def patch_request_overhead():
    """What moto does again on every request although its answer never changes.

    It lists its own package directory to recognise a service name, and writes a log line
    per request; set ORGCONNECT_MOTO_REQUEST_LOG=1 to keep the log lines.
    """
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    if os.environ.get("ORGCONNECT_MOTO_REQUEST_LOG") != "1":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def find_account(backend, account_id):
    """The account `account_id` of `backend`'s organization, or None.

    The index maps an id to its position in moto's own list, and is trusted only when the
    list still holds that id there: accounts are appended (indexed as they appear) and
    rarely removed (which shifts positions, so the index is built again).
    """
    accounts = backend.accounts
    state = backend.__dict__
    if state.get("_bed_accounts") is not accounts:
        state.update(_bed_accounts=accounts, _bed_index={}, _bed_indexed=0)
    index = state["_bed_index"]

    def at(position):
        if position is not None and position < len(accounts):
            account = accounts[position]
            if account.id == account_id:
                return account
        return None

    found = at(index.get(account_id))
    if found is None:
        start = state["_bed_indexed"]
        if start > len(accounts) or account_id in index:
            # An account was removed: positions moved.
            index.clear()
            start = 0
        for position in range(start, len(accounts)):
            index[accounts[position].id] = position
        state["_bed_indexed"] = len(accounts)
        found = at(index.get(account_id))
    # None also when the index missed an account: moto's own walk then decides.
    return found


def patch_organizations():
    backend = OrganizationsBackend
    get_account_by_id = backend.get_account_by_id
    attach_policy = backend.attach_policy
    resource_for_tagging = backend._get_resource_for_tagging

    def fast_get_account_by_id(self, account_id):
        return find_account(self, account_id) or get_account_by_id(self, account_id)

    def fast_move_account(self, **kwargs):
        destination = self.validate_parent_id(kwargs["DestinationParentId"])
        self.validate_parent_id(kwargs["SourceParentId"])
        self.get_account_by_id(kwargs["AccountId"]).parent_id = destination

    def fast_attach_policy(self, **kwargs):
        target = kwargs["TargetId"]
        account = find_account(self, target) if ACCOUNT_ID.match(target) else None
        if account is None:
            return attach_policy(self, **kwargs)
        policy = self.get_policy_by_id(kwargs["PolicyId"])
        if policy not in account.attached_policies:
            account.attached_policies.append(policy)
            policy.attachments.append(account)
        return None

    def fast_resource_for_tagging(self, resource_id):
        if utils.fullmatch(ACCOUNT_ID, resource_id):
            account = find_account(self, resource_id)
            if account is not None:
                return account
        return resource_for_tagging(self, resource_id)

    backend.get_account_by_id = fast_get_account_by_id
    backend.move_account = fast_move_account
    backend.attach_policy = fast_attach_policy
    backend._get_resource_for_tagging = fast_resource_for_tagging


if __name__ == "__main__":
    patch_backend_registry()
    patch_organizations()
    patch_access_key_lookup()
    patch_request_overhead()
    sys.exit(main())
