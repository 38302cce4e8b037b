"""bitswarm tracker: HTTP (BEP 3, BEP 23, BEP 48) and UDP (BEP 15).

Other packages use only the names listed in ``__all__``.
"""

from tracker.app import make_app
from tracker.config import TrackerConfig, testing_config
from tracker.core.addr import PeerAddr
from tracker.core.registry import RegistryStats
from tracker.core.udp import UdpTrackerStats
from tracker.errors import AnnounceRequestError, TrackerError
from tracker.server import TrackerServer, run_tracker
from tracker.udp_server import UdpTrackerServer

__all__ = [
    "AnnounceRequestError",
    "PeerAddr",
    "RegistryStats",
    "TrackerConfig",
    "TrackerError",
    "TrackerServer",
    "UdpTrackerServer",
    "UdpTrackerStats",
    "make_app",
    "run_tracker",
    "testing_config",
]
