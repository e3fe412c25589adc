// CourierCrypto
