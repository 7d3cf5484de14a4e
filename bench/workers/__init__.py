"""Child processes, one framework for all: the messages (protocol), the child's entry
(child), and the parent's side of a child (process, session)."""
