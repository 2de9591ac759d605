"""The live daemon: typed configuration, the shared-memory plane ring, the capture process, the
reconstruction worker, the frame publisher, the control server, the Prometheus metrics, the service
manager's notifications and the loop that ties them together.
"""
