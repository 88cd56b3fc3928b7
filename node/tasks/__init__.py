"""Tasks (任务): what a consumer asks to run, and the one state machine every task follows.

`node.tasks.spec` reads and checks a task spec (program, inputs, outputs, time limit, resources as
a market demand or an offer) and builds the connectors' `Program`; `node.tasks.machine` is the
task's transition table. Both are pure; delivery (ordering, provisioning, following the run,
metering) builds on them.
"""
