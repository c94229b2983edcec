"""Generates a client from a running keel serve's OpenAPI document with
openapi-python-client, the one command of docs/daemon.md ("Generating a
client"), and drives the daemon through it.

Usage: python3 client_smoke.py WORK_DIR  (KEEL_URL and KEEL_TOKEN set)
Prints one line per step and "client ok" at the end; any surprise raises.
Run by crates/daemon/tests/openapi_tools.rs (a daemon in the test process)
and crates/cli/tests/openapi_client.rs (a `keel serve` process).
"""

import os
import subprocess
import sys
import urllib.request

work = sys.argv[1]
request = urllib.request.Request(
    os.environ["KEEL_URL"] + "/api/v1/openapi.json",
    headers={"Authorization": "Bearer " + os.environ["KEEL_TOKEN"]},
)
document = os.path.join(work, "openapi.json")
with urllib.request.urlopen(request, timeout=10) as answer, open(document, "wb") as out:
    out.write(answer.read())
# No post hooks: they would run ruff, which the generated code does not need.
config = os.path.join(work, "config.yaml")
with open(config, "w") as out:
    out.write("post_hooks: []\n")
generated = subprocess.run(
    [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none",
     "--path", document, "--output-path", os.path.join(work, "keel_client"), "--config", config],
    capture_output=True, text=True, timeout=300,
)
said = generated.stdout + generated.stderr
assert generated.returncode == 0, said
assert "Warning" not in said, "the generator warned:\n" + said
print("client generated from the served document")

sys.path.insert(0, work)

from keel_client import AuthenticatedClient  # noqa: E402
from keel_client.api.default import (  # noqa: E402
    apply_plan,
    change_settings,
    enter_maintenance,
    get_actions,
    get_audit,
    get_cluster,
    get_host_samples,
    get_imbalance,
    get_plan,
    get_vm_samples,
    leave_maintenance,
    list_plans,
    place_vm,
    reject_plan,
    replace_allocation,
    replace_rules,
)
from keel_client.models import (  # noqa: E402
    ActionBody,
    AllocationPolicyInput,
    Cluster,
    CpuBoundsInput,
    Error,
    MemoryBoundsInput,
    Placement,
    PlacementRequest,
    Priority,
    ResourcesInput,
    Rules,
    SettingsChange,
    VmAllocationInput,
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
if len(recommended) > 1:
    applying = apply_plan.sync(recommended[0].id, client=client, body=ActionBody(by="client-smoke"))
    assert applying.state.value in ("applying", "done", "failed"), applying
    print(f"plan {applying.id} {applying.state.value}, then {get_plan.sync(applying.id, client=client).state.value}")

host = cluster.hosts[-1].name
entered = enter_maintenance.sync(host, client=client)
assert entered.maintenance is True and entered.host == host, entered
left = leave_maintenance.sync(host, client=client)
assert left.maintenance is False, left
print(f"maintenance of {host}: entered and left")

policy = replace_allocation.sync(
    client=client,
    body=AllocationPolicyInput(vm=[VmAllocationInput(
        name=vm,
        priority=Priority.HIGH,
        cpu=CpuBoundsInput(reservation=0.25, limit="2 cores"),
        memory=MemoryBoundsInput(limit="1GiB"),
    )]),
)
assert policy.vm[0].memory.limit == 2**30, policy
print(f"allocation: {vm} memory limit {policy.vm[0].memory.limit:.0f} bytes")

hosts = get_host_samples.sync(host, client=client, limit=3)
points = get_imbalance.sync(client=client)
audit = get_audit.sync(client=client, limit=20)
actions = get_actions.sync(client=client)
print(f"history: {len(hosts.samples)} host samples, {len(points.points)} imbalance points, "
      f"{len(audit.entries)} audit entries, {len(actions.actions)} actions")
print("client ok")
