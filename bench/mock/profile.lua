-- Profile for the throughput bench: limits far above what one core serves,
-- so every answer is a 200.
return { limits = { rpm = 1e9, tpm = 1e12 } }
