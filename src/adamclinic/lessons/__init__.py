"""One module per lesson, named after its notebook: the demos, panels and measurements that lesson shows.

A lesson module builds on the engine, the shelf (``data``, ``models``, ``panels``) and the clinic, never
on another lesson: what two lessons share lives lower down.
"""
