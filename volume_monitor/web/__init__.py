"""The web service: ``volume-monitor serve`` (see :mod:`volume_monitor.web.app`)."""
