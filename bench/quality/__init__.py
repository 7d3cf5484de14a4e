"""Quality beside speed: every runtime's next-token log-probabilities scored against the fp32
reference, in a worker of its own."""
