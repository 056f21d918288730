"""Who may call and how often: API keys and tenants (auth.py), rate limits (ratelimit.py), the client's
address behind trusted proxies (client_address.py)."""
