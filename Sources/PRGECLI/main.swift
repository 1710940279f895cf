import PRGE
print("prge")
