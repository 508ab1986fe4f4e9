"""What grading keeps: the gradebook (SQLite; resumable, keyed by what decides a grade), who handed a submission in
and when, and written answers with the scores an instructor imports."""
