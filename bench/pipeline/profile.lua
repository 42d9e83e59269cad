-- weft mock profile for bench/pipeline: limits out of the way.
return { limits = { rpm = 1e9, tpm = 1e12 } }
