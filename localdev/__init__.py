"""Developer-machine tooling: the local stack, the local gateway, invoking handlers on sample events.

Never shipped to Lambda (it lives outside the layer package).
"""
