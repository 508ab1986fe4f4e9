"""Editions of the course: which library code holds the answer key (``answer_code``), how a module loses it
(``withhold``), what stands in its place in a student's wheel (``withheld``) and how that wheel is built
(``build``). The repository itself is the full edition."""
