"""Orchestration: every stage run against a store. FireWorks firetasks and workflow builders
(``relax/``, ``training/``), launching, queues and recovery (``launch/``), and the in-process stages
(voltages, report, ranking). The only layer that knows FireWorks' Firework, Workflow and firetasks.
"""
