-- weft mock profile for bench/policy: limits out of the way.
return { limits = { rpm = 1e9, tpm = 1e12 } }
