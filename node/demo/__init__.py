"""`make demo`: the main scenario, run on real node processes over loopback in a temporary folder.

`scenario.py` lists the steps; each capability adds its steps in a module of its own.
"""
