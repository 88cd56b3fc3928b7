"""Account lifecycle and account interconnection (账号互通): consumers' and operator users' status and
real-name verification with an audit trail of every change (node.accounts.store), and partners'
consumers using this node in their own name on their home node's assertion
(node.accounts.federated)."""
