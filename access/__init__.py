"""access: face and QR entry, authorization, gate relay over a serial line, access log."""
