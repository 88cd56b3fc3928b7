"""Inference services (业务调度): task replicas on several pools, and the node steering users'
requests to them by latency, load, health and pinned weights (see docs/services.md).

The public surface: the component (`node.services.component.install`), the steering core
(`node.services.steering`) and the scale-out rule (`node.services.scaling`).
"""
