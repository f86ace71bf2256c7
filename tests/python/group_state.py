"""Waits until a consumer group is stable with a given number of members
and every partition of its topics assigned, as the broker itself reports
it (confluent-kafka's AdminClient.describe_consumer_groups, no pushflow
code).

    group_state.py BROKERS GROUP MEMBERS PARTITIONS SECONDS

Prints JSON {"state", "members", "assigned"} once it holds; exits 1 with
the last state seen when it does not within SECONDS.
"""
import json
import sys
import time

try:
    from confluent_kafka.admin import AdminClient
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package confluent-kafka is missing ({e}); pip install -r tests/python/requirements.txt")

brokers, group = sys.argv[1], sys.argv[2]
members, partitions, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
admin = AdminClient({"bootstrap.servers": brokers})
deadline = time.time() + seconds
last = None
while time.time() < deadline:
    try:
        d = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assigned = sum(len(m.assignment.topic_partitions) for m in d.members)
        last = {"state": str(d.state).split(".")[-1], "members": len(d.members), "assigned": assigned}
        if last["state"] == "STABLE" and last["members"] == members and assigned == partitions:
            print(json.dumps(last))
            sys.exit(0)
    except Exception as e:  # the group may not exist yet
        last = {"error": str(e)}
    time.sleep(0.5)
print(json.dumps(last))
sys.exit(1)
