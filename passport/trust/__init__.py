"""Keys, certificates and (with the trust-model issue) roles and revocation."""

from passport.trust.store import CertificateStore, load_certificates, thumbprint

__all__ = ["CertificateStore", "load_certificates", "thumbprint"]
