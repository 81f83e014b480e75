"""Relaxations as FireWorks: firetasks, workflow builders, the duplicate finder, submission and status."""
