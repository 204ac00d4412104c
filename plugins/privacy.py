"""Privacy of minors' data: campaigns with their legal basis, guardian consent per campaign,
correction and deletion requests, the retention job and de-identified exports.
"""
