"""bnscope.watch(model) in a user's own process: hooks on the user's layers (hooks, and layers for the
lecture's hand-written ones), a bounded sender thread (sender), and the small recording process it
hands events to (process: `python -m bnscope.watched.process`, which never imports torch). Not named
`watch`: that would shadow bnscope.watch, the function. This file imports nothing, so that the
recording process loads no torch."""
