"""Many processes: the cluster's runtime, heartbeat and handshake, the dealer, the local launcher."""
