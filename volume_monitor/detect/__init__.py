"""The detector's parts: the groups series move with, the calendar of holidays."""
