"""The node's connectors component: hosts compute and network plugins and turns their data into offers."""
