"""Running fireworks: in this process, as queue jobs (rlaunch/qlaunch), recovery of lost runs, config-file checks."""
