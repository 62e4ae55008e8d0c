"""AM-QADF Live: real-time monitoring for metal additive manufacturing.

>>> from am_qadf import MachineProfile
>>> MachineProfile.default().machine.id
'sim-1'
"""

from am_qadf.machine_profile import MachineProfile, ProfileError

__version__ = "0.1.0"
__all__ = ["MachineProfile", "ProfileError", "__version__"]
