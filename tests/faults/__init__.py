"""Fault injection for the offload pipeline: a TCP proxy that cuts, stalls and slows links, the
sidecar as a real subprocess (SIGKILL/SIGSTOP), and the invariant checked after every scenario."""
