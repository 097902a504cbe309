"""Engine-independent run plumbing: preemption signals, checkpoint folders, output guards, secrets, reports."""
