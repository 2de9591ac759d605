"""Default endpoints of a daemon: where it publishes frames and where it answers control requests.

Both default to loopback; a daemon bound elsewhere is reached by passing its URLs to the host tools.
"""

DEFAULT_PUB_URL = "tcp://127.0.0.1:5555"
DEFAULT_CONTROL_URL = "tcp://127.0.0.1:5556"
