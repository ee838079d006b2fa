"""Loading, generating and cleaning sale-line exports."""
