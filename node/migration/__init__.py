"""Task migration (任务迁移, paper figure 6): moving a running pool instance to another pool with the
network path provisioned first and its state streamed directly between the pools' storage.

`node.migration.machine` is the transition table (pure). The node only orchestrates: state bytes
go through the data express (`cpnode express`), never through the node.
"""
