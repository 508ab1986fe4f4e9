"""What a grading run hands out, one module per output, rendered from the gradebook's entries: grades.csv and the
class matrix, identical submissions, Gradescope results.json, per-student feedback (one model, Markdown and HTML
templates), the instructor's answer sheets, and the terminal report."""
