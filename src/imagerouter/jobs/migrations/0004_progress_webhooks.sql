-- Version 4: an account may opt in to job.progress webhooks (off by default).

ALTER TABLE webhook_endpoints ADD COLUMN progress boolean NOT NULL DEFAULT false;
