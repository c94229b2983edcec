"""Drives a running keel serve through a client generated from its OpenAPI
document by openapi-python-client (docs/daemon.md, "Generating a client").

Usage: python3 client_smoke.py DIR_WITH_keel_client  (KEEL_URL, KEEL_TOKEN set)
Prints one line per step and "client ok" at the end; any surprise raises.
"""

import os
import sys

sys.path.insert(0, sys.argv[1])

from keel_client import AuthenticatedClient  # noqa: E402
from keel_client.api.default import (  # noqa: E402
    change_settings,
    get_cluster,
    get_vm_samples,
    list_plans,
    place_vm,
    reject_plan,
    replace_rules,
)
from keel_client.models import (  # noqa: E402
    Cluster,
    Error,
    Placement,
    PlacementRequest,
    ResourcesInput,
    Rules,
    SettingsChange,
    VmGroupRule,
)

client = AuthenticatedClient(
    base_url=os.environ["KEEL_URL"],
    token=os.environ["KEEL_TOKEN"],
    raise_on_unexpected_status=True,
)

cluster = get_cluster.sync(client=client)
assert isinstance(cluster, Cluster), cluster
print(f"cluster: {len(cluster.hosts)} hosts, {len(cluster.vms)} VMs")

vm = cluster.vms[0].name
samples = get_vm_samples.sync(vm, client=client, limit=5)
assert samples.vm == vm and len(samples.samples) <= 5, samples
print(f"samples of {vm}: {len(samples.samples)}")

placement = place_vm.sync(
    client=client,
    body=PlacementRequest(name="vm-new-01", size=ResourcesInput(cpu_cores=2, memory_bytes=4 * 2**30)),
)
assert isinstance(placement, Placement), placement
print(f"placement: {placement.decision} on {placement.host}")

refused = place_vm.sync_detailed(client=client, body=PlacementRequest(name=" padded", size=ResourcesInput()))
assert refused.status_code == 400 and isinstance(refused.parsed, Error), refused
print(f"refused: {refused.parsed.code}: {refused.parsed.message}")

rules = replace_rules.sync(
    client=client,
    body=Rules(anti_affinity=[VmGroupRule(name="apart", vms=[cluster.vms[0].name, cluster.vms[1].name])]),
)
assert isinstance(rules, Rules) and rules.anti_affinity[0].name == "apart", rules
print("rules replaced")

settings = change_settings.sync(client=client, body=SettingsChange(level=4))
assert settings.level == 4, settings

plans = list_plans.sync(client=client)
recommended = [p for p in plans.plans if p.state.value == "recommended"]
if recommended:
    rejected = reject_plan.sync(recommended[-1].id, client=client)
    assert rejected.state.value == "rejected", rejected
    print(f"plan {rejected.id} rejected")
print("client ok")
