-- Version 3: an API key's default routing preferences (JSON), laid under each request's own.

ALTER TABLE api_keys ADD COLUMN routing text;
