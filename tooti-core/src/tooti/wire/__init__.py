"""Wire formats shared by nodes and gateways."""
