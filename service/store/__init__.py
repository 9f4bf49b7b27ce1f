"""The only code that runs queries: one module per area, each method named as its query in service/sql."""
