"""chaqum's client library names, served by pmjq (lib/pmjq.py): `from chaqum.lib import *` works unchanged."""
from pmjq import *  # noqa: F401,F403
from pmjq import __all__  # noqa: F401
