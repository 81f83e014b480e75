"""pytest plugin for FireWorks' own LaunchPad tests: the project's runtime fix for FireWorks' offline rocket.

In production the fix is applied when a rocket loads the project's firetasks; FireWorks' tests
use their own firetasks, so the plugin applies it up front.
"""

from drx_workflows.pipeline.fireworks_compat import patch_offline_rocket

patch_offline_rocket()
