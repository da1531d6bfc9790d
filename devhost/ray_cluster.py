"""A two-node Ray cluster on this machine (Ray's own multi-node test cluster), for the cluster test:
one CPU per node, the head's dashboard on 127.0.0.1, run in a process of its own so that the token
settings in its environment take effect (Ray reads them once per process). It prints the head's
address and dashboard as one JSON line, then runs until its standard input closes, and then stops
every process of the cluster.

    python -m devhost.ray_cluster --dashboard-port 8265
"""

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard-port", type=int, required=True)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": args.dashboard_port})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address, "dashboard": f"http://127.0.0.1:{args.dashboard_port}"}),
              flush=True)
        sys.stdin.read()  # until the test closes it (or ends)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
