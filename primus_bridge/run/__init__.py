"""Engine-independent run plumbing: exit codes, preemption signals, checkpoint folders and their lock, output
guards and the preflight before any work, resume-config checks, the non-finite guard, file integrity checks,
secrets, reports."""
