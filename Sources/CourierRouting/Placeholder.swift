// CourierRouting
