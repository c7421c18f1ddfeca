"""Version control of PRDs (issue #14): one git repository per PRD, stored on S3 (:mod:`.gitstore`)."""
