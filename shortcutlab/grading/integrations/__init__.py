"""How grading is driven from outside: `shortcutlab grade` and `shortcutlab answers` for a class, a notebook's check
cells (also under nbgrader autograde), the nbgrader course root, and the Gradescope bundle."""
