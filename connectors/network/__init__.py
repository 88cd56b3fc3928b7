"""Network plugins (网络插件): the contract, path computation, and the network controller simulator."""
