"""Alerting: whether and how badly a scored day alerts and which series it names (``policy``),
and the silences people set (``silences``). The email itself is composed in ``alert``."""
