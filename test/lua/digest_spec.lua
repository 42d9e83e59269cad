-- digest_spec.lua: weft._digest.sha256_hex (OpenSSL) against the FIPS 180-4 examples and the
-- padding boundaries (55, 56, 63, 64 bytes: one block or two), values from
-- coreutils' sha256sum.
local hex = require("weft._digest").sha256_hex

describe("weft._digest.sha256_hex", function()
    it("gives the digests of the standard's examples", function()
        assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(""))
        assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex("abc"))
        assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
        assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", hex(("a"):rep(1000000)))
    end)

    it("pads at the block boundaries", function()
        local want = {
            [55] = "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072",
            [56] = "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e",
            [63] = "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2",
            [64] = "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c",
            [65] = "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9",
        }
        for n, d in pairs(want) do assert.are.equal(d, hex(("x"):rep(n)), n .. " bytes") end
    end)

    it("refuses what is not a string", function()
        assert.has_error(function() hex(nil) end, "sha256: expected a string, got nil")
    end)
end)
